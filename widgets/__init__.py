"""Textual widgets that render modelbrowse.core objects; they never change the model."""
