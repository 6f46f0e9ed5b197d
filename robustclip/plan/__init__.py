"The reproduction as a library: plans as cached steps, stand-in models, fixtures, the rehearsal, the doctor."
