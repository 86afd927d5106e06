"""The API's endpoints, one module per resource, each an ``APIRouter`` of module-level functions."""
