"""jobpipe's Chalice app: wiring only. Routes live in chalicelib.api, workers in chalicelib.worker,
the stream's function in chalicelib.events, the subscribers' in chalicelib.subscribers, the
dashboard page in chalicelib.dashboard."""
from chalice import Chalice

from chalicelib.api.artifacts import artifacts_api
from chalicelib.api.cache_routes import cache_api
from chalicelib.api.maintenance import maintenance_api
from chalicelib.api.routes import api
from chalicelib.api.rq_compat import rq_api
from chalicelib.api.system import system_api
from chalicelib.dashboard import dashboard
from chalicelib.events.handlers import events
from chalicelib.invocation import invocation
from chalicelib.subscribers.handlers import subscribers
from chalicelib.worker.handlers import worker
from chalicelib.worker.scheduled import scheduled

app = Chalice(app_name="jobpipe")
app.register_blueprint(api)
app.register_blueprint(cache_api)
app.register_blueprint(rq_api)
app.register_blueprint(artifacts_api)
app.register_blueprint(maintenance_api)
app.register_blueprint(system_api)
app.register_blueprint(worker)
app.register_blueprint(events)
app.register_blueprint(subscribers)
app.register_blueprint(scheduled)
app.register_blueprint(dashboard)


@app.middleware("http")
def observe(event, get_response):
    """Every API request runs in the invocation scope that wraps every function
    (chalicelib/invocation.py): fresh log keys, a trace subsegment, one summary line naming the
    route and the status it answered."""
    with invocation("api_handler", app.lambda_context) as summary:
        summary.update(method=event.method, route=(event.context or {}).get("resourcePath"))
        response = get_response(event)
        summary["status"] = response.status_code
        return response
