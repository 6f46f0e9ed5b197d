"Vision-language models in pixel space: the LVLM interface, the llava-hf backend, and the captioning / VQA / POPE metrics."
