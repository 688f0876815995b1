"""The GADER matching microservice (REST + gRPC front ends over one core).

Filled by the service issues; the method it serves lives in the ``gader`` package.
"""
