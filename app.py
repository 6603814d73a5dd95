"""mailbridge: Chalice wiring only — routes come from blueprints, events call into chalicelib."""
import os

from chalicelib import coldstart  # first: the collector pauses while the handler's modules load
from chalice import Chalice, Cron, Rate

from chalicelib.api.blueprints import admin, keys, meta
from chalicelib.api.blueprints import mail_servers, mailboxes
from chalicelib.api.blueprints import messages as messages_api
from chalicelib.api.blueprints import sync as sync_api
from chalicelib.api.blueprints import directory, links, rules, signals
from chalicelib.api.blueprints import notifications, oauth, push, push_graph, webhook
from chalicelib.api.blueprints import outbox
from chalicelib.api.blueprints import console
from chalicelib.api.blueprints import privacy
from chalicelib.api.blueprints import search, threads
from chalicelib.api.framework_errors import problem_middleware

app = Chalice(app_name="mailbridge")
app.api.binary_types.append("message/rfc822")
app.register_middleware(problem_middleware, "http")   # Chalice's own 405/406/415/500 answers as problem+json

app.register_blueprint(meta.bp)
app.register_blueprint(admin.bp)
app.register_blueprint(keys.bp)
app.register_blueprint(mail_servers.bp)
app.register_blueprint(mailboxes.bp)
app.register_blueprint(messages_api.bp)
app.register_blueprint(sync_api.bp)
app.register_blueprint(directory.bp)
app.register_blueprint(links.bp)
app.register_blueprint(signals.bp)
app.register_blueprint(rules.bp)
app.register_blueprint(webhook.bp)
app.register_blueprint(notifications.bp)
app.register_blueprint(push.bp)
app.register_blueprint(oauth.bp)
app.register_blueprint(push_graph.bp)
app.register_blueprint(outbox.bp)
app.register_blueprint(console.bp)
app.register_blueprint(privacy.bp)
app.register_blueprint(threads.bp)
app.register_blueprint(search.bp)
coldstart.loaded()


# --- events (sync engine) -------------------------------------------------------------------------------------
# Each handler imports its module on use: a Lambda function then loads only its own code path (the API's cold
# start does not load the engine, and the worker does not load the API), not to dodge an import cycle.
@app.schedule(Cron("0,30", "*", "*", "*", "?", "*"), name="scheduler")
def scheduler(event):
    from chalicelib.sync.scheduler import run_tick
    return run_tick()


@app.on_sqs_message(queue=os.environ.get("MAILBRIDGE_SYNC_QUEUE_NAME", "mailbridge-dev-sync"), batch_size=10,
                    name="worker")
def worker(event):
    from chalicelib.sync.worker import handle_batch
    return handle_batch(event.to_dict(), event.context)


# The poller waits up to 10 s to fill a batch (MaximumBatchingWindowInSeconds, https://docs.aws.amazon.com/lambda/
# latest/dg/services-sqs-configure.html): one invocation, one root-key unwrap and one Lambda request serve up
# to ten checks even when the scheduler's jitter trickles the tick's jobs out (docs/benchmarks.md, "Cost").
@app.on_sqs_message(queue=os.environ.get("MAILBRIDGE_CHECK_QUEUE_NAME", "mailbridge-dev-check"), batch_size=10,
                    maximum_batching_window_in_seconds=10, name="checker")
def checker(event):
    from chalicelib.sync.check import handle_batch
    return handle_batch(event.to_dict(), event.context)


@app.on_sqs_message(queue=os.environ.get("MAILBRIDGE_EVENTS_QUEUE_NAME", "mailbridge-dev-events"), batch_size=10,
                    name="notifier")
def notifier(event):
    from chalicelib.notify.notifier import handle_batch
    return handle_batch(event.to_dict(), event.context)


@app.schedule(Rate(1, unit=Rate.HOURS), name="renewer")
def renewer(event):
    from chalicelib.sync.renewer import run
    return run(context=event.context)
