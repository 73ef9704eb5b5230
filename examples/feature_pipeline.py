"""A pandas feature pipeline: purchases in, one row of model features per customer out.

    purchases ─┬─► spend_features ────┐
               ├─► recency_features ──┼─► feature_table ─► churn_risk
               └─► category_mix ──────┘

What it shows:
  * Hamilton-style wiring: each function is named for the feature set it computes and
    takes the tables it needs as parameters named like the steps that make them;
  * the three feature steps are independent, so they run at the same time (plain
    ``def`` steps run in worker threads; pandas releases the GIL in much of its work);
  * graph inputs with defaults and conversion from text: ``as_of`` may be given as
    ``"2026-03-01"`` and arrives as a ``date``;
  * ``graph(feature_table, churn_risk)``: two targets, so ``result.output`` is a dict;
  * each step is still the plain function: a test calls ``churn_risk(table)`` directly.

The purchases are generated (deterministically) by the first step, so the example needs
no data file; in real use that step would read a file or a database.

Run it:  python examples/feature_pipeline.py
"""

from datetime import date

import pandas as pd

from flowfn import graph, run, step

CATEGORIES = ("groceries", "travel", "electronics", "books")


@step
def purchases(customers: int = 6, days: int = 90) -> pd.DataFrame:
    """Customer ``c`` buys every ``c + 2`` days and stops ``12 * c`` days before the end."""
    rows = [
        {
            "customer": f"c{c}",
            "date": pd.Timestamp("2026-01-01") + pd.Timedelta(days=day),
            "category": CATEGORIES[(c + day) % len(CATEGORIES)],
            "amount": 5.0 + (c * 13 + day * 7) % 40,
        }
        for c in range(customers)
        for day in range(0, days - 12 * c, c + 2)
    ]
    return pd.DataFrame(rows, columns=["customer", "date", "category", "amount"])


@step
def spend_features(purchases: pd.DataFrame) -> pd.DataFrame:
    return purchases.groupby("customer")["amount"].agg(
        orders="count", total_spend="sum", mean_basket="mean", max_basket="max"
    )


@step
def recency_features(purchases: pd.DataFrame, as_of: date = date(2026, 4, 1)) -> pd.DataFrame:
    dates = purchases.groupby("customer")["date"]
    first, last = dates.min(), dates.max()
    return pd.DataFrame({
        "days_since_last": (pd.Timestamp(as_of) - last).dt.days,
        "active_days": (last - first).dt.days,
    })


@step
def category_mix(purchases: pd.DataFrame) -> pd.DataFrame:
    """The share of each customer's spend per category (rows sum to 1)."""
    spend = purchases.pivot_table(index="customer", columns="category", values="amount",
                                  aggfunc="sum", fill_value=0.0)
    shares = spend.div(spend.sum(axis=1), axis=0)
    return shares.reindex(columns=list(CATEGORIES), fill_value=0.0).add_prefix("share_")


@step
def feature_table(
    spend_features: pd.DataFrame, recency_features: pd.DataFrame, category_mix: pd.DataFrame
) -> pd.DataFrame:
    table = spend_features.join([recency_features, category_mix], how="inner")
    return table.sort_index().round(2)


@step
def churn_risk(feature_table: pd.DataFrame, quiet_days: int = 21) -> list[str]:
    """Customers who have bought nothing for ``quiet_days`` days, most silent first."""
    quiet = feature_table[feature_table["days_since_last"] > quiet_days]
    return quiet.sort_values("days_since_last", ascending=False).index.tolist()


flow = graph(feature_table, churn_risk)

if __name__ == "__main__":
    result = run(flow, {"as_of": "2026-04-01"})
    table = result.output["feature_table"]
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(table.to_string())
    print(f"\ncustomers: {len(table)}, features: {len(table.columns)}")
    print(f"churn risk: {result.output['churn_risk']}")
    print()
    print(result.report())
