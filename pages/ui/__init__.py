"""Dashboard building blocks shared by the pages (Streamlit code; no science here)."""
