"""The sentence encoder, the FAISS index over historical dialogues, and model bundles."""
