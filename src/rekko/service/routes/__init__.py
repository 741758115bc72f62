"""HTTP routes, one module per area; :func:`rekko.service.app.create_app` mounts them all."""
