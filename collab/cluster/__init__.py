"""``collab cluster``: several nodes, a Redis and a load balancer on one machine, for developers."""
