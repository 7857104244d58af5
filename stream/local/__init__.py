"""Running the product on one machine: the local broker, the simulator and the feeder."""
