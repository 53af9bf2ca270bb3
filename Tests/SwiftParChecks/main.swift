import SwiftPar
print("placeholder")
