from pages.ui.pending import pending_page
from pages.ui.services import get_services
from pages.ui.sidebar import sidebar

sidebar(get_services())
pending_page(
    "Rashomon sets",
    "The set of almost-equally-good models: how big it is, where its members disagree, "
    "and how their explanations vary.",
    ["membership under a relative or absolute ε, updated as the slider moves",
     "predictive multiplicity: ambiguity and discrepancy",
     "variable-importance clouds and feature-interaction scores across the set, sparse-tree sets"],
    "Rashomon sets",
)
