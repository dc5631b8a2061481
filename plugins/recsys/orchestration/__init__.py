"""What the Airflow tasks call: one function per task, and the training run behind them."""
