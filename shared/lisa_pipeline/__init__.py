"""The LISA pipeline's contract: what travels (``events``), where (``topics``), in which order
(``stages``) and the catalogue product's columns (``products``), each declared once.

It sits above the runtime (``choreo``) and the kernels (``lisa_science``) and below the services
and the tools, which all read it; it imports neither of them.
"""
