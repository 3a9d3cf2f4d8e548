"""Training the proxy: data sets, training steps and loops, new heads, re-initialisation."""
