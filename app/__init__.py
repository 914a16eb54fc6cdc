"""The live dashboard: Streamlit pages over the trainer's logs and checkpoints (docs/design.md, "Run files").

Data modules (settings, runlog, summary, curves, projection) are plain Python and tested
without Streamlit; `views/` holds one page each; `main.py` is what `streamlit run` starts.
"""
