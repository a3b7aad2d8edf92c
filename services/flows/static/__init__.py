"""The flow view's page (index.html, app.js, style.css), read with importlib.resources."""
