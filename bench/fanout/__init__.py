"""The fan-out benchmark of issue 7: the project vs the stock Channels chat vs a bare websockets server."""
