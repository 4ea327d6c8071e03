"""Reading and writing images and volumes."""
