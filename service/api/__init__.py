"""The REST front end: pydantic schemas and one router per resource."""
