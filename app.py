"""mailbridge: Chalice wiring only — routes come from blueprints, events call into chalicelib."""
from chalice import Chalice

from chalicelib.api.blueprints import admin, keys, meta

app = Chalice(app_name="mailbridge")
app.api.binary_types.append("message/rfc822")

app.register_blueprint(meta.bp)
app.register_blueprint(admin.bp)
app.register_blueprint(keys.bp)
