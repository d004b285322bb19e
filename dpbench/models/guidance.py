"""Classifier-free guidance's training constant, apart from the model code so settings can name it cheaply."""

P_UNCOND = 0.1  # label-drop probability for classifier-free guidance training (Ho & Salimans 2022)
