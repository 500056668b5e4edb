"""Observability: Prometheus metrics, OpenTelemetry spans and a `/metrics` app.

Off by default, and then free: nothing is registered and no connection
does any extra work. Turn it on per controller class (inherited):

```python
from tether.metrics import TetherMetrics, metrics_app

metrics = TetherMetrics()                 # prometheus_client's default registry

class Chat(WebSocketController):
    metrics = metrics

app = Starlette(routes=[WebSocketRoute("/ws", Chat), Route("/metrics", metrics_app(metrics))])
```

Needs the `metrics` extra (`prometheus_client`); spans need `opentelemetry-api`.
"""

from tether.metrics.exposition import MetricsApp, metrics_app
from tether.metrics.prometheus import ControllerMeter, TetherMetrics

__all__ = ["ControllerMeter", "MetricsApp", "TetherMetrics", "metrics_app"]
