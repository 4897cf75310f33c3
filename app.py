"""jobpipe's Chalice app: wiring only. Routes live in chalicelib.api, workers in chalicelib.worker,
the dashboard page in chalicelib.dashboard."""
from chalice import Chalice

from chalicelib.api.artifacts import artifacts_api
from chalicelib.api.cache_routes import cache_api
from chalicelib.api.maintenance import maintenance_api
from chalicelib.api.routes import api
from chalicelib.api.rq_compat import rq_api
from chalicelib.api.system import system_api
from chalicelib.composition import report_aws_requests
from chalicelib.dashboard import dashboard
from chalicelib.events.handlers import events
from chalicelib.observability import logger
from chalicelib.worker.handlers import worker
from chalicelib.worker.scheduled import scheduled
from chalicelib.worker.stats_stream import stats_stream

app = Chalice(app_name="jobpipe")
app.register_blueprint(api)
app.register_blueprint(cache_api)
app.register_blueprint(rq_api)
app.register_blueprint(artifacts_api)
app.register_blueprint(maintenance_api)
app.register_blueprint(system_api)
app.register_blueprint(worker)
app.register_blueprint(events)
app.register_blueprint(stats_stream)
app.register_blueprint(scheduled)
app.register_blueprint(dashboard)


@app.middleware("all")
def observe(event, get_response):
    """Tag every log line of an invocation with its request id; report its AWS requests when
    they are counted (the benchmark)."""
    context = app.lambda_context
    if context is not None:
        logger.append_keys(function_request_id=getattr(context, "aws_request_id", None))
    try:
        return get_response(event)
    finally:
        report_aws_requests()
