"""Published datasets: artifacts of their own (CNCF dataset layers and a record), read, compared, and
found again in the models that recorded them."""
