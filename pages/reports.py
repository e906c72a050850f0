from pages.ui.pending import pending_page
from pages.ui.services import get_services
from pages.ui.sidebar import sidebar

sidebar(get_services())
pending_page(
    "Reports",
    "Pin figures from any page and export them as one self-contained HTML file that opens offline.",
    ["a draft of pinned figures with their parameters, ordered, with a title and Markdown notes",
     "export to a single offline HTML file with provenance (ids, configs, versions, author, time)",
     "PNG/SVG export of any figure"],
    "Reports, sharing and team deployment",
)
