"The mini world: a toy image-caption world built from sklearn digit glyphs, and mini-base, the tiny CLIP pretrained on it."
