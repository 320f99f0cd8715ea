"""`cabctl sim`: the firmware's dispatch engine over a load profile, offline."""
