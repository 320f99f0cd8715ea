-- Fleet telemetry in PostgreSQL, written by `cabctl ingest` (host/cabctl/ingest.py, fleetdb.py).
-- GENERATED from firmware/telemetry.json (version 5) by cabctl.fleetdb.schema_sql();
-- regenerate with: python -m cabctl.fleetdb --schema > host/cabctl/fleetdb.sql
-- Idempotent: `cabctl ingest` runs it at start; psql -f fleetdb.sql does the same.

-- One row per cycle frame. ts: the logger's wall-clock time when it read the
-- frame (UTC, microseconds, strictly increasing per cabinet), so
-- (site, cabinet, ts) names a frame and a frame delivered twice is stored once.
-- Partitioned by day on ts: telemetry_YYYYMMDD holds [day, day + 1) UTC.
CREATE TABLE IF NOT EXISTS telemetry (
    ts                 timestamptz NOT NULL,
    site               text        NOT NULL,
    cabinet            text        NOT NULL,
    version            bigint,
    seq                bigint,
    uptime_ms          bigint,
    grid_w             bigint,
    battery_w          bigint,
    setpoint_w         bigint,
    soc_cpct           bigint,
    load_w             bigint,
    reason             bigint,
    state              bigint,
    cycle_us           bigint,
    late_cycles        bigint,
    meter_errors       bigint,
    pcs_errors         bigint,
    charge_max_w       bigint,
    discharge_max_w    bigint,
    pcs_alarms         bigint,
    cap_w              bigint,
    cause              bigint,
    transitions        bigint,
    site_flags         bigint,
    pv_w               bigint,
    genset_w           bigint,
    voltage_dv         bigint,
    freq_mhz           bigint,
    ct_w               bigint,
    ct_alarm           bigint,
    ff_w               bigint,
    hint_w             bigint,
    pred_period_ms     bigint,
    pred_flags         bigint,
    extra              jsonb,
    PRIMARY KEY (site, cabinet, ts)
) PARTITION BY RANGE (ts);
-- A newer telemetry.json: its new fields become new columns of an existing table
-- (columns are never renamed or dropped; fields are only ever appended).
DO $$
DECLARE
    col text;
BEGIN
    FOREACH col IN ARRAY ARRAY['version', 'seq', 'uptime_ms', 'grid_w', 'battery_w', 'setpoint_w', 'soc_cpct', 'load_w', 'reason', 'state', 'cycle_us', 'late_cycles', 'meter_errors', 'pcs_errors', 'charge_max_w', 'discharge_max_w', 'pcs_alarms', 'cap_w', 'cause', 'transitions', 'site_flags', 'pv_w', 'genset_w', 'voltage_dv', 'freq_mhz', 'ct_w', 'ct_alarm', 'ff_w', 'hint_w', 'pred_period_ms', 'pred_flags'] LOOP
        IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                       AND table_name = 'telemetry' AND column_name = col) THEN
            EXECUTE format('ALTER TABLE telemetry ADD COLUMN %I bigint', col);
        END IF;
    END LOOP;
END $$;
COMMENT ON TABLE telemetry IS 'cabinet cycle frames (cabctl log --mqtt -> cabctl ingest), partitioned by day on ts';
COMMENT ON COLUMN telemetry.ts IS 'logger wall-clock time the frame was read, UTC';
COMMENT ON COLUMN telemetry.extra IS 'fields this schema does not know (a newer firmware), else NULL';
COMMENT ON COLUMN telemetry.version IS 'telemetry.json key 0';
COMMENT ON COLUMN telemetry.seq IS 'telemetry.json key 1: cycle counter, wraps at 2**30';
COMMENT ON COLUMN telemetry.uptime_ms IS 'telemetry.json key 2: unit ms; wraps at 2**30';
COMMENT ON COLUMN telemetry.grid_w IS 'telemetry.json key 3: unit W; meter reading, > 0 import';
COMMENT ON COLUMN telemetry.battery_w IS 'telemetry.json key 4: unit W; PCS actual power, > 0 discharge';
COMMENT ON COLUMN telemetry.setpoint_w IS 'telemetry.json key 5: unit W; setpoint written this cycle';
COMMENT ON COLUMN telemetry.soc_cpct IS 'telemetry.json key 6: unit 0.01%';
COMMENT ON COLUMN telemetry.load_w IS 'telemetry.json key 7: unit W; grid + battery';
COMMENT ON COLUMN telemetry.reason IS 'telemetry.json key 8: dispatch stage that bound the setpoint (cabinet.dispatch.REASONS); names in fleet_enum (kind ''reason'')';
COMMENT ON COLUMN telemetry.state IS 'telemetry.json key 9: failsafe state (enums.state, cabinet.failsafe.STATES); names in fleet_enum (kind ''state'')';
COMMENT ON COLUMN telemetry.cycle_us IS 'telemetry.json key 10: unit us; busy time of the previous cycle';
COMMENT ON COLUMN telemetry.late_cycles IS 'telemetry.json key 11: cycles whose work overran the period';
COMMENT ON COLUMN telemetry.meter_errors IS 'telemetry.json key 12: failed meter transactions since boot';
COMMENT ON COLUMN telemetry.pcs_errors IS 'telemetry.json key 13: failed PCS transactions since boot';
COMMENT ON COLUMN telemetry.charge_max_w IS 'telemetry.json key 14: unit W';
COMMENT ON COLUMN telemetry.discharge_max_w IS 'telemetry.json key 15: unit W';
COMMENT ON COLUMN telemetry.pcs_alarms IS 'telemetry.json key 16: PCS alarm bits as read';
COMMENT ON COLUMN telemetry.cap_w IS 'telemetry.json key 17: unit W';
COMMENT ON COLUMN telemetry.cause IS 'telemetry.json key 18: why the state is what it is (enums.cause) - since version 2; names in fleet_enum (kind ''cause'')';
COMMENT ON COLUMN telemetry.transitions IS 'telemetry.json key 19: state changes since boot - since version 2';
COMMENT ON COLUMN telemetry.site_flags IS 'telemetry.json key 20: bit 0 outage, 1 shed requested, 2 genset requested, 3 PV curtailed - since version 3';
COMMENT ON COLUMN telemetry.pv_w IS 'telemetry.json key 21: unit W; PV inverter output - since version 3';
COMMENT ON COLUMN telemetry.genset_w IS 'telemetry.json key 22: unit W; genset output - since version 3';
COMMENT ON COLUMN telemetry.voltage_dv IS 'telemetry.json key 23: unit 0.1V; grid voltage at the meter - since version 3';
COMMENT ON COLUMN telemetry.freq_mhz IS 'telemetry.json key 24: unit mHz; grid frequency at the meter - since version 3';
COMMENT ON COLUMN telemetry.ct_w IS 'telemetry.json key 25: unit W; grid power from the current transformers (last block; 0 without CTs), > 0 import - since version 4';
COMMENT ON COLUMN telemetry.ct_alarm IS 'telemetry.json key 26: bit 0 CT and meter disagree (dispatch on the meter), 1 CTs configured but no fresh block - since version 4';
COMMENT ON COLUMN telemetry.ff_w IS 'telemetry.json key 27: unit W; feed-forward the engine used this cycle after its cuts: the load change planned for ahead of time (> 0 a rise), 0 without prediction - since version 5';
COMMENT ON COLUMN telemetry.hint_w IS 'telemetry.json key 28: unit W; the announced part of the predicted change (armed job hints; > 0 rises) - since version 5';
COMMENT ON COLUMN telemetry.pred_period_ms IS 'telemetry.json key 29: unit ms; iteration period the predictor found, 0 none or prediction off - since version 5';
COMMENT ON COLUMN telemetry.pred_flags IS 'telemetry.json key 30: bit 0 the rhythm drives the feed-forward (confident, few false alarms), 1 suspended by the rhythm check; bits 4..7 job hints pending - since version 5';
-- Time-range scans across all cabinets (Grafana): a BRIN index is tiny on append-only data.
CREATE INDEX IF NOT EXISTS telemetry_ts_brin ON telemetry USING brin (ts);

-- telemetry_YYYYMMDD for a day (UTC), if missing; returns its name.
CREATE OR REPLACE FUNCTION fleet_telemetry_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'telemetry_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                       part, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    END IF;
    RETURN part;
EXCEPTION WHEN duplicate_table OR unique_violation THEN
    RETURN part;                                -- another ingest made it meanwhile
END $$;

-- Event frames (boot, transition, config_changed, command_result); data: the event's own fields.
CREATE TABLE IF NOT EXISTS events (
    ts                 timestamptz NOT NULL,
    site               text        NOT NULL,
    cabinet            text        NOT NULL,
    event              text        NOT NULL,
    seq                bigint,
    uptime_ms          bigint,
    version            bigint,
    data               jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (site, cabinet, ts)
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);

-- The latest retained status of each cabinet's logger (online, counters, last frame).
CREATE TABLE IF NOT EXISTS cabinet_status (
    site               text        NOT NULL,
    cabinet            text        NOT NULL,
    ts                 timestamptz NOT NULL,
    online             boolean     NOT NULL,
    status             jsonb       NOT NULL,
    PRIMARY KEY (site, cabinet)
);

-- Names of the enum columns' values (Grafana value mappings, joins).
CREATE TABLE IF NOT EXISTS fleet_enum (
    kind               text        NOT NULL,
    value              integer     NOT NULL,
    name               text        NOT NULL,
    PRIMARY KEY (kind, value)
);
INSERT INTO fleet_enum (kind, value, name) VALUES
    ('reason', 0, 'idle'),
    ('reason', 1, 'cap'),
    ('reason', 2, 'recharge'),
    ('reason', 3, 'pcs_limit'),
    ('reason', 4, 'soc_limit'),
    ('reason', 5, 'fault'),
    ('reason', 6, 'no_export'),
    ('reason', 7, 'disarmed'),
    ('reason', 8, 'dr_limit'),
    ('reason', 9, 'ramp'),
    ('reason', 10, 'slew'),
    ('reason', 11, 'arbitrage'),
    ('reason', 12, 'outage'),
    ('state', 0, 'init'),
    ('state', 1, 'run'),
    ('state', 2, 'degraded'),
    ('state', 3, 'safe'),
    ('cause', 0, 'ok'),
    ('cause', 1, 'meter_lost'),
    ('cause', 2, 'meter_stale'),
    ('cause', 3, 'meter_frozen'),
    ('cause', 4, 'meter_invalid'),
    ('cause', 5, 'pcs_lost'),
    ('cause', 6, 'pcs_fault'),
    ('cause', 7, 'pcs_not_following'),
    ('cause', 8, 'disarmed'),
    ('cause', 9, 'read_error')
ON CONFLICT (kind, value) DO UPDATE SET name = EXCLUDED.name;
