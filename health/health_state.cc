// placeholder, replaced by the health state machine
