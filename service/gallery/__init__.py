"""Galleries: stores (SQLite embedded, Redis shared) and the FAISS index derived from them."""
