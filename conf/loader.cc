namespace tether::conf {}
