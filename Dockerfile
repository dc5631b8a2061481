# The Airflow image of the deployment (docker-compose.yml): the official Airflow 3 image, the pinned
# runtime requirements (requirements.txt without the test and docs tools of requirements-dev-only.txt),
# and the recsys package. dags/ and dbt_project/ are mounted by compose: editing them needs no rebuild.
FROM apache/airflow:3.3.2-python3.11

COPY requirements.txt requirements-dev-only.txt /tmp/
RUN sed 's/^/^/; s/$/==/' /tmp/requirements-dev-only.txt > /tmp/dev-only.patterns \
 && grep -viEf /tmp/dev-only.patterns /tmp/requirements.txt > /tmp/requirements-runtime.txt \
 && pip install --no-cache-dir -r /tmp/requirements-runtime.txt

COPY --chown=airflow:root pyproject.toml /opt/recsys/pyproject.toml
COPY --chown=airflow:root plugins /opt/recsys/plugins
COPY --chown=airflow:root dags /opt/recsys/dags
COPY --chown=airflow:root dbt_project /opt/recsys/dbt_project
RUN pip install --no-cache-dir --no-deps -e /opt/recsys
