"""Every read model, by name: the routing table the workers and the rebuilds use."""

from app.eventlog.projection import Projection
from queries.inventory_levels import INVENTORY_LEVELS
from queries.order_summaries import ORDER_SUMMARIES
from queries.sales_stats import SALES_STATS

PROJECTIONS: dict[str, Projection] = {p.name: p for p in (ORDER_SUMMARIES, SALES_STATS, INVENTORY_LEVELS)}
