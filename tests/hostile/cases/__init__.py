"""Every case of the hostile suite, one module per class of issue 10's list, imported in the
order of that list: the order cases are listed and reported in."""

from cases import denial, conditional, poisoning, hostnames  # noqa: F401,I001
from cases import vary, smuggling, purge, origins  # noqa: F401,I001
