"""The web layer: configuration, the page, the JSON API, admin routes and error answers."""
