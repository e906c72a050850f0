"""Zooscope's engine: data, architectures, training, probes and figures.

The core (``config``, ``data``, ``nets``, ``train``, ``probes``, ``figures``) works on
plain tensors and never imports Streamlit or the store.
"""

__version__ = "0.1.0"
