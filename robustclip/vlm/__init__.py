"Vision-language models in pixel space: the LVLM interface, the llava-hf backend, data, metrics and attacks."
