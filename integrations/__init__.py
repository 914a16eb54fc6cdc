"""Where this project meets other tools: Hugging Face transformers (hf)."""
