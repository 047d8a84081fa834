namespace tether::proxy {}
