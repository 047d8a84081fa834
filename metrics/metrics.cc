namespace tether::metrics {}
