"The reproduction as a library: plans as cached steps, stand-in models, fixtures in the released layouts, the rehearsal and the doctor."
