"""The machine a run computes on: the host CPU's facts (``host_cpu``), the compute precision
(``precision``), devices and the distribution strategy (``devices``), and the workers of a
multi-worker run (``workers``)."""
