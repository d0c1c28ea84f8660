-- The hub's two databases on the compose file's PostgreSQL, each with its own role:
--   hub          the warehouse (raw, std, mpi, publish, audit), owned by role hub
--   hub_airflow  Airflow's metadata, owned by role hub_airflow
-- Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d), as the
-- superuser. The passwords come from the container's environment (HUB_WAREHOUSE_DB_PASSWORD,
-- HUB_AIRFLOW_DB_PASSWORD; see .env.example). Needs psql 15+ (\getenv).
\set ON_ERROR_STOP on

\getenv warehouse_password HUB_WAREHOUSE_DB_PASSWORD
\getenv airflow_password HUB_AIRFLOW_DB_PASSWORD

-- The warehouse role creates the departments' group roles and view owners (`hub grants apply`),
-- hence CREATEROLE; it is not a superuser, so the read API never runs as one.
CREATE ROLE hub LOGIN CREATEROLE PASSWORD :'warehouse_password';
CREATE DATABASE hub OWNER hub ENCODING 'UTF8' TEMPLATE template0;

-- Departments' users connect to the warehouse (their group roles decide what they read);
-- Airflow's database is for Airflow's role only.
CREATE ROLE hub_airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE hub_airflow OWNER hub_airflow ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE hub_airflow FROM PUBLIC;
