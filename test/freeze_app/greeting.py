def greet(name):
    return f"Hello {name}, from a frozen app"
