from pages.ui.pending import pending_page
from pages.ui.services import get_services
from pages.ui.sidebar import sidebar

sidebar(get_services())
pending_page(
    "Representations",
    "How the inside of the networks compares: layer against layer, model against model, through training.",
    ["CKA (and Procrustes, SVCCA, RSA) heatmaps layer × layer and layer × checkpoint",
     "UMAP/PCA projections of a layer's features through training, coloured by class",
     "neural-collapse metrics NC1–NC4 and intrinsic dimension per layer"],
    "Representation geometry",
)
