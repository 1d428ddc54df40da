"""Every case of the hostile suite, one module per class of issue 10's list."""

from cases import conditional, denial, hostnames, origins, poisoning, purge, smuggling, vary  # noqa: F401
