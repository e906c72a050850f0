from pages.ui.pending import pending_page
from pages.ui.services import get_services
from pages.ui.sidebar import sidebar

sidebar(get_services())
pending_page(
    "Loss landscape",
    "The geometry of the loss around one model: where it sits, how sharp it is, and how it got there.",
    ["1D and 2D slices along filter-normalized random, Hessian or PCA-of-trajectory directions, "
     "as a surface and a contour with the training trajectory overlaid",
     "the Hessian eigenvalue spectrum (density, top-k, trace)",
     "sharpness over training against the 2/η line (edge of stability)",
     "intrinsic dimension: accuracy against subspace dimension, with d_int90"],
    "Loss landscapes and curvature",
)
