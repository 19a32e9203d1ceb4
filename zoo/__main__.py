from zoo.fit import usage

print(usage())
