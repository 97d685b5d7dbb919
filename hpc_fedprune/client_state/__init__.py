"""Persistent per-client state: exact arrays within a memory budget, kept on home ranks.

`ClientStateStore` holds the states of the clients a rank is home to (spilling to disk
beyond its budget); `ClientStates` lends them to the ranks that train those clients and
takes them back, every round, with one chunked exchange.
"""
