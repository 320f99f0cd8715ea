"""The emulated plant: GPU-cluster load, battery + PCS, site meter, on a Modbus RTU bus."""
