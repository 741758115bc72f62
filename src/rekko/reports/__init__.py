"""Self-contained HTML reports: explore a data set, compare evaluated models.

Reports open offline (inline CSS and SVG charts, no scripts). Matplotlib is imported only when a
report is drawn, so importing this package stays light.
"""

from rekko.reports.details import EvaluationDetails, evaluate_with_details
from rekko.reports.evaluation import evaluation_report
from rekko.reports.explore import explore_report

__all__ = ["EvaluationDetails", "evaluate_with_details", "evaluation_report", "explore_report"]
