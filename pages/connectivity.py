from pages.ui.pending import pending_page
from pages.ui.services import get_services
from pages.ui.sidebar import sidebar

sidebar(get_services())
pending_page(
    "Mode connectivity",
    "Whether two solutions are connected by a path of low loss, before and after aligning their neurons.",
    ["loss and error along the linear path between two checkpoints, with the barrier and its definition",
     "permutation alignment by weight matching or activation matching, with a function-preservation check",
     "layer-wise barriers, spawning (instability analysis) and merged models"],
    "Mode connectivity",
)
