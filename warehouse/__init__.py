"""The PostgreSQL warehouse: models, migrations, bulk loading, releases."""
